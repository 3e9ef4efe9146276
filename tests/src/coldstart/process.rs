//! One function process: started with exactly the given environment, its output appended to a
//! log file, and killed (by its own PID) when dropped, whatever happened.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct FunctionProcess {
    child: Child,
}

impl FunctionProcess {
    /// Starts `bootstrap`; the instant returned is taken just before the fork/exec.
    pub fn spawn(bootstrap: &Path, environment: &[(String, String)], log: &Path) -> io::Result<(Self, Instant)> {
        let output = OpenOptions::new().create(true).append(true).open(log)?;
        let errors = output.try_clone()?;
        let mut command = Command::new(bootstrap);
        command
            .env_clear()
            .envs(environment.iter().map(|(name, value)| (name, value)))
            .current_dir(bootstrap.parent().unwrap_or(Path::new(".")))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors);
        let started = Instant::now();
        let child = command.spawn()?;
        Ok((Self { child }, started))
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended on its own.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// CPU time used so far by all its threads (`/proc/<pid>/task/*/schedstat`, nanoseconds).
    /// Unlike wall-clock time, it hardly depends on what else the machine is doing.
    pub fn cpu_time(&self) -> io::Result<Duration> {
        let mut total = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.id()))? {
            let schedstat = std::fs::read_to_string(task?.path().join("schedstat"))?;
            total += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .ok_or_else(|| io::Error::other("unreadable schedstat"))?;
        }
        Ok(Duration::from_nanos(total))
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> io::Result<u64> {
        crate::procs::memory(self.id())
            .map(|memory| memory.peak_kib)
            .ok_or_else(|| io::Error::other("no VmHWM line in /proc/<pid>/status"))
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        // A process that already exited cannot be killed; that is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log file every process of one function appends to.
pub fn truncate_log(log: &Path) -> io::Result<()> {
    File::create(log).map(drop)
}
