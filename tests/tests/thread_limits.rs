//! When the OS refuses new threads (an address-space, process or thread limit), a large hit,
//! which reads and hashes on two threads, and a large key, which blake3 hashes on rayon's pool,
//! still work on the calling thread: never a panic, never a failed call.

use std::path::Path;

use memo_cache::{Cache, Function};

static BIG: Function = Function::new("thread_limits::big", "v1", "Vec<u8>");

/// 12 MiB: three pieces, so the reader would use its second thread.
const LEN: usize = 12 << 20;

#[test]
fn large_hits_and_keys_work_when_no_thread_can_be_made() {
    if let Ok(dir) = std::env::var("MEMO_THREAD_LIMITS_CHILD") {
        let cache = Cache::open(Path::new(&dir)).unwrap();
        let _: Option<Vec<u8>> = cache.get(&BIG, &("warm",)).unwrap();
        let argument: Vec<u8> = vec![7; 1 << 20];
        // Room for the value's buffer and a little more, not for a thread's stack.
        let limit = memo_cache_e2e::vm_size() + LEN + (256 << 10);
        let limit = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
        let got: Option<Vec<u8>> = cache.get(&BIG, &("big",)).unwrap();
        println!("hit {:?}", got.as_ref().map(|v| (v.len(), v[LEN - 1])));
        // With the value held, no thread fits: the key is hashed on this one.
        let refused = std::thread::Builder::new().spawn(|| ()).is_err();
        println!("thread refused {refused}");
        let key = BIG.key(&(&argument,)).unwrap();
        println!("key {}", &key.to_hex()[..8]);
        drop(got);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let value: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    Cache::open(dir.path())
        .unwrap()
        .put(&BIG, &("big",), &value)
        .unwrap();
    let expected_key = BIG.key(&(&vec![7u8; 1 << 20],)).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "large_hits_and_keys_work_when_no_thread_can_be_made",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEMO_THREAD_LIMITS_CHILD", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("hit Some(({LEN}, {}))", (LEN - 1) % 251)),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("thread refused true"),
        "the limit must refuse threads, or this test proves nothing:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("key {}", &expected_key.to_hex()[..8])),
        "the same key on one thread:\n{stdout}\n{stderr}"
    );
}
