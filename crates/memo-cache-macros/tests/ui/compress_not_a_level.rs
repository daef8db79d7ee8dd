use memo_cache::disk_cache;

#[disk_cache(compress = "high")]
fn report(day: u32) -> String {
    format!("day {day}")
}

fn main() {
    let _ = report(1);
}
