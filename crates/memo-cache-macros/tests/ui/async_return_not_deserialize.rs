use memo_cache::disk_cache;

struct Report {
    lines: Vec<String>,
}

#[disk_cache(memory = 4)]
async fn report(n: usize) -> Result<Report, std::io::Error> {
    Ok(Report { lines: vec![String::new(); n] })
}

#[tokio::main]
async fn main() {
    let _ = report(3).await.map(|r| r.lines);
    let _ = report__recompute(3).await;
    let _ = report__is_cached(3);
}
