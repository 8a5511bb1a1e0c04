//! What `syncline sync` shows while it runs, on standard error: a progress
//! bar on a terminal, plain lines otherwise (at most one a second). The
//! outcome goes to standard output once, whichever mode.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// A bar when standard error is a terminal, plain lines otherwise.
    Auto,
    /// A progress bar.
    Bar,
    /// Plain lines.
    Plain,
    /// Nothing but the final summary.
    None,
}

/// How often plain mode prints a line while pulling.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// The progress of one sync, drawn as a bar or written as lines.
pub(crate) struct Progress {
    view: View,
    started: Instant,
    last_line: Option<Instant>,
    /// Changes pulled that were new here.
    pulled: u64,
    /// Local changes the remote acknowledged.
    pushed: u64,
    /// The remote lsn pulled through.
    through: u64,
    /// The remote's head (its last lsn), as the engine last heard it.
    head: u64,
}

enum View {
    Bar(ProgressBar),
    Lines(Box<dyn Write + Send>),
    Quiet,
}

impl Progress {
    /// Progress shown as `mode` says, on standard error.
    pub(crate) fn new(mode: Mode) -> Self {
        use std::io::IsTerminal;
        let mode = match mode {
            Mode::Auto if std::io::stderr().is_terminal() => Mode::Bar,
            Mode::Auto => Mode::Plain,
            other => other,
        };
        match mode {
            Mode::Bar => Self::bar(ProgressDrawTarget::stderr()),
            Mode::Plain => Self::lines(Box::new(std::io::stderr())),
            _ => Self::with_view(View::Quiet),
        }
    }

    /// A bar drawn on `target`.
    pub(crate) fn bar(target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} pulling [{bar:30}] {percent:>3}% {msg} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self::with_view(View::Bar(bar))
    }

    /// Plain lines written to `out`.
    pub(crate) fn lines(out: Box<dyn Write + Send>) -> Self {
        Self::with_view(View::Lines(out))
    }

    fn with_view(view: View) -> Self {
        Self {
            view,
            started: Instant::now(),
            last_line: None,
            pulled: 0,
            pushed: 0,
            through: 0,
            head: 0,
        }
    }

    /// Changes per second pulled so far.
    fn rate(&self, now: Instant) -> u64 {
        let secs = now.duration_since(self.started).as_secs_f64();
        if secs <= 0.0 {
            return 0;
        }
        (self.pulled as f64 / secs) as u64
    }

    /// The remote's head moved (a handshake, a notification, a batch).
    pub(crate) fn head(&mut self, head: u64) {
        self.head = self.head.max(head);
        if let View::Bar(bar) = &self.view {
            bar.set_length(self.head.max(self.through));
        }
    }

    /// Local changes were acknowledged.
    pub(crate) fn pushed(&mut self, count: usize) {
        self.pushed += count as u64;
    }

    /// A pulled batch applied: `count` new changes, through the remote's
    /// lsn `through`.
    pub(crate) fn pulled(&mut self, count: usize, through: u64, now: Instant) {
        self.pulled += count as u64;
        self.through = self.through.max(through);
        self.head = self.head.max(through);
        let rate = self.rate(now);
        let (pulled, through, head) = (self.pulled, self.through, self.head);
        match &mut self.view {
            View::Bar(bar) => {
                bar.set_length(head);
                bar.set_position(through);
                bar.set_message(format!("{pulled} changes, {rate}/s"));
            }
            View::Lines(out) => {
                if self
                    .last_line
                    .is_none_or(|t| now.duration_since(t) >= LINE_EVERY)
                {
                    self.last_line = Some(now);
                    let _ = writeln!(
                        out,
                        "pulling: {pulled} changes, through {through} of {head}, {rate}/s"
                    );
                }
            }
            View::Quiet => {}
        }
    }

    /// The sync ended: the bar goes (the outcome is printed once, on
    /// standard output, by the caller).
    pub(crate) fn finish(&mut self) {
        if let View::Bar(bar) = &mut self.view {
            bar.finish_and_clear();
        }
    }

    /// The bar's position and length (tests).
    #[cfg(test)]
    fn bar_state(&self) -> Option<(u64, Option<u64>, String)> {
        match &self.view {
            View::Bar(bar) => Some((bar.position(), bar.length(), bar.message())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_follows_the_pulled_lsn_towards_the_remote_head() {
        let mut p = Progress::bar(ProgressDrawTarget::hidden());
        p.head(1_000);
        let t = p.started;
        p.pulled(400, 400, t + Duration::from_secs(2));
        assert_eq!(
            p.bar_state(),
            Some((400, Some(1_000), "400 changes, 200/s".to_owned()))
        );
        p.pulled(600, 1_000, t + Duration::from_secs(4));
        let (pos, len, msg) = p.bar_state().unwrap();
        assert_eq!((pos, len), (1_000, Some(1_000)));
        assert_eq!(msg, "1000 changes, 250/s");
        p.finish();
    }

    #[test]
    fn plain_lines_come_at_most_once_a_second() {
        let out = Shared::default();
        let mut p = Progress::lines(Box::new(out.clone()));
        p.head(3_000);
        let t = p.started;
        p.pulled(1_000, 1_000, t + Duration::from_millis(500));
        p.pulled(1_000, 2_000, t + Duration::from_millis(900)); // too soon: no line
        p.pulled(1_000, 3_000, t + Duration::from_millis(1_600));
        p.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "pulling: 1000 changes, through 1000 of 3000, 2000/s",
                "pulling: 3000 changes, through 3000 of 3000, 1875/s",
            ]
        );
    }
}
