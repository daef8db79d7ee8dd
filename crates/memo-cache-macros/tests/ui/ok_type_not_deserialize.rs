use memo_cache::disk_cache;

struct Page {
    body: String,
}

#[disk_cache]
fn fetch(url: String) -> Result<Page, std::io::Error> {
    Ok(Page { body: url })
}

fn main() {
    let _ = fetch("a".into()).map(|p| p.body);
}
