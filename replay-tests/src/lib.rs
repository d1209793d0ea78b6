//! Recorded histories and the tests that replay them (see `tests/`).
