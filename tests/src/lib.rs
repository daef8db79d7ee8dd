//! Shared helpers for memo-cache's end-to-end tests: child programs live in `src/bin/`, tests in
//! `tests/`.
