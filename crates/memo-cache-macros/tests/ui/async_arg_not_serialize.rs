use memo_cache::disk_cache;
use std::collections::HashSet;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Tag(String);

struct Image {
    pixels: Vec<u8>,
}

#[disk_cache]
async fn brightness(tags: &HashSet<Tag>, image: Image, scale: u64) -> u64 {
    image.pixels.len() as u64 * scale + tags.len() as u64
}

#[tokio::main]
async fn main() {
    let tags = HashSet::new();
    let _ = brightness(&tags, Image { pixels: vec![] }, 2).await;
}
