//! A one-line progress bar on stderr: epoch, batches, loss, images per second and ETA. On a
//! terminal it redraws in place; otherwise (logs, CI) it prints a line every 10 %.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of one epoch.
pub struct ProgressBar {
    enabled: bool,
    tty: bool,
    label: String,
    total: usize,
    start: Instant,
    last_draw: Option<Instant>,
    last_decile: usize,
    images: usize,
}

impl ProgressBar {
    /// A bar for `total` batches, labelled `label` (e.g. `epoch 3/30`); `enabled` false draws
    /// nothing.
    pub fn new(label: String, total: usize, enabled: bool) -> Self {
        Self {
            enabled,
            tty: std::io::stderr().is_terminal(),
            label,
            total: total.max(1),
            start: Instant::now(),
            last_draw: None,
            last_decile: 0,
            images: 0,
        }
    }

    /// Records that batch `done` (1-based) of `images` images finished with mean loss `loss`.
    pub fn update(&mut self, done: usize, images: usize, loss: f64) {
        self.images += images;
        if !self.enabled {
            return;
        }
        let elapsed = self.start.elapsed();
        let rate = self.images as f64 / elapsed.as_secs_f64().max(1e-9);
        let per_batch = elapsed.as_secs_f64() / done.max(1) as f64;
        let eta = Duration::from_secs_f64(per_batch * (self.total.saturating_sub(done)) as f64);
        let line = format!(
            "{} [{}] {done}/{} loss {loss:.4} {rate:.1} img/s ETA {}",
            self.label,
            bar(done, self.total, 24),
            self.total,
            clock(eta)
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let now = Instant::now();
            let due = self
                .last_draw
                .is_none_or(|t| now - t > Duration::from_millis(100));
            if due || done == self.total {
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                self.last_draw = Some(now);
            }
        } else {
            let decile = done * 10 / self.total;
            if decile > self.last_decile || done == self.total {
                self.last_decile = decile;
                let _ = writeln!(err, "{line}");
            }
        }
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.enabled && self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width / total.max(1)).min(width);
    let mut s = "=".repeat(filled);
    if filled < width {
        s.push('>');
        s.push_str(&" ".repeat(width - filled - 1));
    }
    s
}

/// `h:mm:ss` or `m:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
