import fc from 'fast-check';

// Loaded before every test file (package.json's scripts): a failed property then says what
// failed (the assertion, its values) beside its counterexample. fast-check 4 otherwise keeps
// the error in `cause`, which the test runner's report leaves out.
fc.configureGlobal({ ...fc.readConfigureGlobal(), includeErrorInReport: true });
