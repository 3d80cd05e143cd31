//! Opting out of tests that need something outside the process (a Redis server, Chromium).
//!
//! Such a test runs or fails: a missing server is a failure with the reason, never a quiet
//! `ok`. Only an explicit `WECHAT_LOGIN_SKIP` (comma-separated: `redis`, `browser`, or `all`)
//! skips it, and the skip is written straight to the terminal's stderr, past libtest's output
//! capture, so it is seen even when the test passes. CI refuses to run with the variable set.

use std::io::Write;

/// The variable that opts out, and its value's separator.
pub const VARIABLE: &str = "WECHAT_LOGIN_SKIP";

/// Whether `WECHAT_LOGIN_SKIP` opts out of tests that need `what` (saying so where it is seen).
pub fn opted_out(what: &str) -> bool {
    let Ok(value) = std::env::var(VARIABLE) else {
        return false;
    };
    let opted = value
        .split(',')
        .map(str::trim)
        .any(|item| item == what || item == "all");
    if opted {
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a test");
        // Not `eprintln!`: libtest captures that for passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {VARIABLE}={value} opts out of tests that need {what}"
        );
    }
    opted
}

/// The failure for a test whose `what` is missing and not opted out of.
pub fn missing(what: &str, why: impl std::fmt::Display) -> ! {
    panic!(
        "this test needs {what}: {why}; install or start it, or opt out with {VARIABLE}=redis, browser or all"
    )
}
