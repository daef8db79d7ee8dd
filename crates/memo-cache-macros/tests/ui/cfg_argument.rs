use memo_cache::disk_cache;

#[disk_cache]
fn render(text: &str, #[cfg(not(unix))] _color: u8) -> String {
    text.to_uppercase()
}

fn main() {
    let _ = render("hi");
}
