// proc.js - what a test sees of a daemon and its children through /proc
// (tests/fcgi_hygiene.js, tests/ws/nofile.js).
'use strict';

const fs = require('node:fs');

// The processes whose parent is ppid: [{pid, cmd}].
function children(ppid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let st;
    try { st = fs.readFileSync(`/proc/${d}/stat`, 'utf8'); } catch (e) { continue; }
    if (Number(st.split(') ')[1].split(' ')[1]) !== ppid) continue;
    let cmd = '';
    try { cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch (e) {}
    out.push({ pid: Number(d), cmd });
  }
  return out;
}

// pid's open descriptors: Map fd -> what it links to.
function fdLinks(pid) {
  const m = new Map();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try { m.set(Number(fd), fs.readlinkSync(`/proc/${pid}/fd/${fd}`)); } catch (e) {}
  }
  return m;
}

// pid's CPU time (utime + stime) in ms: Linux counts it in 1/100 s ticks.
function cpuMs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

module.exports = { children, fdLinks, cpuMs };
