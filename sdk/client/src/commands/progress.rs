//! Progress of long operations (rebuilds, ledger verification) on stderr: stdout keeps the answer
//! alone, with `--json` too.
//!
//! On a terminal the line is redrawn every second (count, share and elapsed time); elsewhere (a
//! CI log, a file) a line is written every 10 s, so a long run is not silent and a short one
//! prints only its first and last line. With `--json` and no terminal, nothing: stderr then
//! holds only the JSON error, if any.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// No progress off a terminal from now on (`--json`: a script reads stderr as one JSON error).
pub(crate) fn quiet_unless_terminal() {
    QUIET.store(true, Ordering::Relaxed);
}

/// A running operation's progress.
pub(crate) struct Progress {
    shared: Arc<Shared>,
    stop: Option<(Sender<()>, std::thread::JoinHandle<()>)>,
}

struct Shared {
    what: String,
    unit: &'static str,
    done: AtomicU64,
    total: AtomicU64,
    started: Instant,
    out: Mutex<Box<dyn Write + Send>>,
    tty: bool,
}

impl Shared {
    fn line(&self) -> String {
        let (done, total) = (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed));
        let secs = self.started.elapsed().as_secs();
        match total {
            0 if done == 0 => format!("{}… {secs} s", self.what),
            0 => format!("{}: {done} {} … {secs} s", self.what, self.unit),
            t => format!("{}: {done}/{t} {} ({}%) … {secs} s", self.what, self.unit, done * 100 / t.max(1)),
        }
    }

    fn write(&self, text: &str, redraw: bool) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = if redraw { write!(out, "\r\x1b[2K{text}") } else { writeln!(out, "{text}") };
        let _ = out.flush();
    }
}

impl Progress {
    /// Start reporting `what` (e.g. "rebuilding contracts") on stderr.
    pub(crate) fn start(what: impl Into<String>, unit: &'static str) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        if QUIET.load(Ordering::Relaxed) && !tty {
            return Self::to(Box::new(std::io::sink()), false, what.into(), unit, Duration::from_secs(3600));
        }
        let every = if tty { Duration::from_secs(1) } else { Duration::from_secs(10) };
        Self::to(Box::new(std::io::stderr()), tty, what.into(), unit, every)
    }

    /// Report to `out`, redrawing one line if `tty`, every `every`.
    fn to(out: Box<dyn Write + Send>, tty: bool, what: String, unit: &'static str, every: Duration) -> Self {
        let shared = Arc::new(Shared {
            what,
            unit,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            started: Instant::now(),
            out: Mutex::new(out),
            tty,
        });
        shared.write(&format!("{}…", shared.what), tty);
        let (tx, rx): (Sender<()>, Receiver<()>) = std::sync::mpsc::channel();
        let s = shared.clone();
        let ticker = std::thread::spawn(move || {
            loop {
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => s.write(&s.line(), s.tty),
                    _ => return,
                }
            }
        });
        Self { shared, stop: Some((tx, ticker)) }
    }

    /// `done` of `total` units so far (`total` 0: unknown).
    pub(crate) fn set(&self, done: u64, total: u64) {
        self.shared.done.store(done, Ordering::Relaxed);
        self.shared.total.store(total, Ordering::Relaxed);
    }

    /// End with `outcome` ("done", "failed").
    pub(crate) fn finish(mut self, outcome: &str) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: &str) {
        let Some((tx, ticker)) = self.stop.take() else { return };
        drop(tx);
        let _ = ticker.join();
        let s = &self.shared;
        let (done, unit) = (s.done.load(Ordering::Relaxed), s.unit);
        let count = if done > 0 { format!(" ({done} {unit})") } else { String::new() };
        let text = format!("{}: {outcome}{count} in {:.1} s", s.what, s.started.elapsed().as_secs_f64());
        s.write(&text, s.tty);
        if s.tty {
            s.write("", false);
        }
    }
}

impl Drop for Progress {
    /// An operation left by `?` ends as failed.
    fn drop(&mut self) {
        self.end("failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(b: &Buf) -> String {
        String::from_utf8(b.0.lock().unwrap().clone()).unwrap()
    }

    /// Wait (up to 10 s: a loaded machine may be slow to run the ticker) until `b` holds `what`.
    fn wait_for(b: &Buf, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !text(b).contains(what) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_log_gets_lines_a_terminal_one_redrawn_line() {
        let buf = Buf::default();
        let p = Progress::to(Box::new(buf.clone()), false, "verifying".into(), "entries", Duration::from_millis(20));
        p.set(512, 2048);
        wait_for(&buf, "verifying: 512/2048 entries (25%)");
        p.finish("verified");
        let t = text(&buf);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.first(), Some(&"verifying…"), "{t}");
        assert!(lines.iter().any(|l| l.starts_with("verifying: 512/2048 entries (25%) … ")), "{t}");
        assert!(lines.last().unwrap().starts_with("verifying: verified (512 entries) in "), "{t}");
        assert!(!t.contains('\r'), "no redraws in a log: {t:?}");

        let buf = Buf::default();
        let p = Progress::to(Box::new(buf.clone()), true, "rebuilding".into(), "", Duration::from_millis(20));
        wait_for(&buf, "\r\x1b[2Krebuilding… ");
        drop(p);
        let t = text(&buf);
        assert!(t.starts_with("\r\x1b[2Krebuilding…"), "{t:?}");
        assert!(t.contains("\r\x1b[2Krebuilding… ") && t.contains(" s\r"), "a redrawn tick: {t:?}");
        assert!(t.contains("rebuilding: failed in ") && t.ends_with('\n'), "dropped by `?`: {t:?}");
    }
}
