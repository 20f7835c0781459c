//! Preconditions some tests need (root, a mount), and how a missing one is
//! reported: never a silent pass. The test prints one loud line straight to
//! the terminal (past the test harness's output capture) and passes, or
//! fails when the run requires the precondition: CI runs as root and sets
//! `PUSHD_REQUIRE_ROOT=1`, so there every such test runs in full.

use std::io::Write;

/// Set to `1` to turn every skip for a missing privilege into a failure.
pub const REQUIRE_ROOT: &str = "PUSHD_REQUIRE_ROOT";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn required() -> bool {
    std::env::var(REQUIRE_ROOT).is_ok_and(|v| v == "1")
}

/// Reports that `test` skips `what` because `why`; panics when the run
/// requires root. Written to the real stderr so it shows even for a
/// passing test.
pub fn skipped(test: &str, what: &str, why: &str) {
    assert!(
        !required(),
        "{test}: {what} cannot run ({why}), and {REQUIRE_ROOT}=1 requires it"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {what} ({why}); {REQUIRE_ROOT}=1 makes this a failure ***"
    );
}
