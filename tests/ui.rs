//! Guards the macro's compile errors: each is reported at the offending
//! token with a message that says what to do (`ui/fail`); the supported
//! signatures compile (`ui/pass`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
