use memo_cache::disk_cache;

#[derive(serde::Deserialize)]
struct Parsed {
    value: u64,
}

#[disk_cache]
fn parse(text: String) -> Vec<Parsed> {
    vec![Parsed { value: text.len() as u64 }]
}

fn main() {
    let _ = parse("a".into())[0].value;
}
