use memo_cache::disk_cache;

struct Image {
    pixels: Vec<u8>,
}

#[disk_cache]
fn brightness(image: &Image) -> u64 {
    image.pixels.iter().map(|&p| u64::from(p)).sum()
}

fn main() {
    let _ = brightness(&Image { pixels: vec![1, 2] });
}
