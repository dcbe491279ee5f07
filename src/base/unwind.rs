//! Panics inside dependencies that a user's input can reach (a GPU driver missing, a
//! record of another net), turned into errors at the one place they are called.

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`, turning a panic into its message (and keeping it off stderr).
pub fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = caught(f);
    std::panic::set_hook(previous_hook);
    outcome
}

/// Runs `f`, turning a panic into its message; the panic hook still reports it. For
/// long-lived threads (a server's), where swapping the process-wide hook would race.
pub fn caught<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .map(|s| first_line(&s))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}
