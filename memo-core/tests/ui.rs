//! Guards the macro's compile errors: each is reported at the offending
//! token with a message that says what to do (`ui/fail`); the supported
//! signatures compile (`ui/pass`).

//!
//! Here, in memo-core, rather than in the integration tests' package: trybuild
//! builds its cases with the dependencies of the package that runs it, and
//! that package turns on the remote engines (redis, `object_store`, an AWS TLS
//! stack), which made this test take over four minutes on a clean clone.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
