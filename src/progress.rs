//! How far a long run has come, told to its caller between units of work (a block of files read
//! or decoded, a GPU batch of features, a chunk of predictions), and the caller's answer: go on,
//! or stop there with its error. The Python bindings stop on Ctrl-C and on a progress callback
//! that raises; a library caller may stop on anything. A stopped run writes nothing: caches and
//! outputs are only written whole, after the last unit.
//!
//! The hook is called from the thread that called the run, never from its worker threads, so a
//! caller may do there what only that thread can (Python checks for signals on its main thread).

use anyhow::Result;
use serde::Serialize;
use std::sync::Arc;

/// One report: `done` of `total` units of `stage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `read` (files read and hashed), `decode` (files decoded and resampled), `features`
    /// (clips whose features are extracted), `predict` (files predicted).
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}

/// The caller's hook; the default asks nothing and never stops.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(Step) -> Result<()> + Send + Sync>>);

impl Progress {
    pub fn new(hook: impl Fn(Step) -> Result<()> + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(hook)))
    }

    /// Tells the hook; its error stops the run (returned as it is, for the caller to recognise).
    pub fn report(&self, stage: &'static str, done: usize, total: usize) -> Result<()> {
        match &self.0 {
            Some(hook) => hook(Step { stage, done, total }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Progress(hook)" } else { "Progress(none)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_hook_hears_every_step_and_its_error_is_the_runs() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let progress = Progress::new({
            let heard = heard.clone();
            move |s| {
                heard.lock().unwrap().push(s);
                anyhow::ensure!(s.done < 2, "stop at {}", s.done);
                Ok(())
            }
        });
        progress.report("decode", 1, 3).unwrap();
        let err = progress.report("decode", 2, 3).unwrap_err();
        assert_eq!(err.to_string(), "stop at 2");
        assert_eq!(heard.lock().unwrap().len(), 2);
        assert!(Progress::default().report("features", 5, 5).is_ok());
    }
}
