use memo_cache::disk_cache;

#[disk_cache(ignore(progres))]
fn fetch(url: String, progress: bool) -> String {
    if progress {
        eprintln!("{url}");
    }
    url
}

fn main() {
    let _ = fetch("a".into(), true);
}
