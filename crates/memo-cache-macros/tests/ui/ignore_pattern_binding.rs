use memo_cache::disk_cache;

#[disk_cache(ignore(verbose))]
fn area((width, height, verbose): (u32, u32, bool)) -> u32 {
    if verbose {
        eprintln!("area of {width}x{height}");
    }
    width * height
}

fn main() {
    let _ = area((2, 3, true));
}
