//! Outside attack (session 9) on the large-value store and hit paths, through `#[disk_cache]`
//! in real child processes. Each test here failed when written: a cache failure during a large
//! store ended the process instead of leaving the function's result unchanged.
//!
//! - `a_large_store_past_rlimit_fsize_returns_the_value`: under `RLIMIT_FSIZE` with the default
//!   SIGXFSZ disposition, the blob write kills the process (SIGXFSZ), though the library reads
//!   the limit for its index (`space::file_size_limit`).
//! - `a_compressible_large_store_under_an_address_space_limit_returns_the_value`: a large
//!   compressible `Vec<u8>` is copied whole by `codec::encode` (and again by zstd's output
//!   buffer) before it is compressed; where that copy does not fit, the allocation failure
//!   aborts the process (SIGABRT). The same value under `compress = 0` is stored from its own
//!   memory and the call returns.
//!
//! The child of each test is this test binary's ignored `child` test, chosen by
//! `ATTACK_CHILD`.

use std::path::Path;
use std::process::{Command, Output};

use memo_cache::disk_cache;
use memo_cache_e2e::run_bounded;

/// 8 MiB of bytes that do not compress (a blob, stored from the vector's own memory).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, word) in out.chunks_mut(8).enumerate() {
        let x = (i as u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0xd6e8_feb8_6659_fd93);
        let bytes = (x ^ (x >> 29)).to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
    out
}

#[disk_cache]
fn large_noise(len: usize) -> Vec<u8> {
    noise(len, 7)
}

#[disk_cache]
fn zeros(len: usize) -> Vec<u8> {
    vec![0; len]
}

#[disk_cache(compress = 0)]
fn zeros_uncompressed(len: usize) -> Vec<u8> {
    vec![0; len]
}

/// Runs the `child` test of this binary with `ATTACK_CHILD=mode`, `MEMO_CACHE_DIR=dir`, behind
/// `prefix` (a command such as `prlimit --fsize=..`) when given.
fn run_child(mode: &str, dir: &Path, prefix: &[&str]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    cmd.args([
        "child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ATTACK_CHILD", mode)
    .env("MEMO_CACHE_DIR", dir)
    .env("MEMO_CACHE_QUIET", "1");
    run_bounded(&mut cmd)
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "a child process of the tests below"]
fn child() {
    const ZEROS: usize = 256 << 20;
    match std::env::var("ATTACK_CHILD").unwrap().as_str() {
        // Started under `prlimit --fsize=2MiB`, SIGXFSZ left as it is by default.
        "fsize" => {
            let value = large_noise(8 << 20);
            println!(
                "fsize value {} right {}",
                value.len(),
                value == noise(8 << 20, 7)
            );
            // Through the API, the store's error says what happened and what to do.
            let dir = std::env::var("MEMO_CACHE_DIR").unwrap();
            let cache = memo_cache::Cache::open(&dir).unwrap();
            let f = memo_cache::Function::new("attack::fsize", "v1", "Vec<u8>");
            let err = cache.put(&f, &(1,), &value).unwrap_err();
            println!("fsize put error: {err}");
            // Values under the limit are still stored.
            cache.put(&f, &(2,), &noise(1 << 20, 2)).unwrap();
            println!(
                "fsize small stored {}",
                cache.get::<_, Vec<u8>>(&f, &(2,)).unwrap() == Some(noise(1 << 20, 2))
            );
        }
        "address-space" | "address-space-uncompressed" => {
            // Threads (rayon's pool, the second reader) started before the limit.
            let warm = large_noise(16 << 20);
            assert_eq!(warm.len(), 16 << 20);
            // Room for the value and half of it again: not for a second whole copy.
            let limit = libc::rlimit {
                rlim_cur: (memo_cache_e2e::vm_size() + ZEROS + ZEROS / 2 + (64 << 20))
                    as libc::rlim_t,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: setrlimit with a valid struct.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
            let value = if std::env::var("ATTACK_CHILD").unwrap() == "address-space" {
                zeros(ZEROS)
            } else {
                zeros_uncompressed(ZEROS)
            };
            println!(
                "zeros value {} right {}",
                value.len(),
                value.iter().all(|&b| b == 0)
            );
        }
        other => panic!("unknown child {other}"),
    }
}

/// A program run under `ulimit -f` (here 2 MiB) calls a cached function returning 8 MiB: the
/// blob file cannot be written, and the call must still return its value (the cache failure
/// logged). Today the write past the limit raises SIGXFSZ, whose default action ends the
/// process (wait status 25): the function's result is lost with it.
#[test]
fn a_large_store_past_rlimit_fsize_returns_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("fsize", dir.path(), &["prlimit", "--fsize=2097152"]);
    let described = describe(&out);
    assert!(
        out.status.success(),
        "the process did not survive its cached call:\n{described}"
    );
    assert!(
        described.contains("fsize value 8388608 right true"),
        "{described}"
    );
    assert!(
        described.contains("over this process's file size limit (RLIMIT_FSIZE, `ulimit -f`)"),
        "{described}"
    );
    assert!(described.contains("fsize small stored true"), "{described}");
    // Nothing half-written is left behind.
    let tmp: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

/// Under an address-space limit that holds a 256 MiB value and half of it again, a cached
/// function returning 256 MiB of zeros (compressible, default compression) must return it,
/// stored or not. Today `codec::encode` copies the vector whole before zstd is tried, the copy
/// does not fit, and the process aborts ("memory allocation of 268435457 bytes failed",
/// SIGABRT). The control, the same value under `compress = 0`, is stored from its own memory
/// and returns: the limit leaves room for the value and the cache's own work on it.
#[test]
fn a_compressible_large_store_under_an_address_space_limit_returns_the_value() {
    let control = tempfile::tempdir().unwrap();
    let out = run_child("address-space-uncompressed", control.path(), &[]);
    let described = describe(&out);
    assert!(
        out.status.success() && described.contains("zeros value 268435456 right true"),
        "the control must pass, or the limit is too tight to prove anything:\n{described}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = run_child("address-space", dir.path(), &[]);
    let described = describe(&out);
    assert!(
        out.status.success(),
        "the process did not survive its cached call:\n{described}"
    );
    assert!(
        described.contains("zeros value 268435456 right true"),
        "{described}"
    );
}
