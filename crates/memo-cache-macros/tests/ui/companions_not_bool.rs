use memo_cache::disk_cache;

trait Area {
    fn area(&self) -> u32;
}

#[derive(serde::Serialize)]
struct Square(u32);

impl Area for Square {
    #[disk_cache(companions = "no")]
    fn area(&self) -> u32 {
        self.0 * self.0
    }
}

fn main() {
    let _ = Square(2).area();
}
