use std::collections::BTreeMap;

use memo_cache::disk_cache;

#[disk_cache(ignore(config), ordered(config))]
fn render(rows: u32, config: BTreeMap<String, u32>) -> String {
    format!("{rows} {config:?}")
}

fn main() {
    let _ = render(1, BTreeMap::new());
}
