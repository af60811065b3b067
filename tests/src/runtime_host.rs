//! What a container runtime started by a test leaves on the machine, and how the test
//! takes it away again: the runtime's processes (by PID), mounts under its own
//! directories, the pods' network namespaces and cgroups.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name in parentheses: "pid (comm) S ...".
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Sends `signal` (e.g. `-KILL`) to one process.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .output();
}

/// Stops a child: SIGTERM, and SIGKILL if it has not exited after `grace`.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    signal(child.id(), "-TERM");
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Unmounts everything at or under `dir` (a test's own directory).
pub fn unmount_under(dir: &Path) {
    for point in mounts_under(dir) {
        let _ = Command::new("umount").arg("-l").arg(&point).output();
    }
}

/// Whether a named network namespace is still there.
pub fn netns_exists(path: &Path) -> bool {
    path.exists()
}

/// Deletes a pod's network namespace the runtime left behind (after a failure): its
/// bind mount and the file it is mounted on.
pub fn remove_netns(path: &Path) {
    if path.exists() {
        let _ = Command::new("umount").arg("-l").arg(path).output();
        let _ = std::fs::remove_file(path);
    }
}

/// The cgroup v1 hierarchies and the v2 one of this machine.
fn cgroup_roots() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter(|line| {
            line.split(" - ")
                .nth(1)
                .is_some_and(|fs| fs.starts_with("cgroup ") || fs.starts_with("cgroup2 "))
        })
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
}

/// The cgroup directories named `parent` (a test's own cgroup parent) that exist.
pub fn cgroups_of(parent: &str) -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|root| root.join(parent.trim_start_matches('/')))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Directories below `dir` at any depth, deepest first (the cgroups of containers and
/// their monitors that were not removed).
pub fn cgroup_children(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(cgroup_children(&entry.path()));
            found.push(entry.path());
        }
    }
    found
}

/// The processes in one cgroup.
pub fn cgroup_processes(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Removes a test's cgroup parent in every hierarchy, children first (cgroup
/// directories are removed with rmdir; their files go with them).
pub fn remove_cgroups(parent: &str) {
    for dir in cgroups_of(parent) {
        for child in cgroup_children(&dir) {
            let _ = std::fs::remove_dir(child);
        }
        let _ = std::fs::remove_dir(&dir);
    }
}
