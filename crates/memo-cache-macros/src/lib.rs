//! The `#[disk_cache]` attribute; use it through `memo_cache::disk_cache`.
