use memo_cache::disk_cache;

struct Image {
    pixels: Vec<u8>,
}

#[disk_cache]
fn brightness(Image { pixels }: Image) -> u64 {
    pixels.iter().map(|&p| u64::from(p)).sum()
}

fn main() {
    let _ = brightness(Image { pixels: vec![1, 2] });
}
