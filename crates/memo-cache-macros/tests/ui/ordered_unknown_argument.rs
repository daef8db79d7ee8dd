use memo_cache::disk_cache;

#[disk_cache(ordered(colums))]
fn render(columns: Vec<(String, u32)>) -> String {
    format!("{columns:?}")
}

fn main() {
    let _ = render(Vec::new());
}
