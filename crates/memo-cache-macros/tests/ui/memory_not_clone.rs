use memo_cache::disk_cache;

#[derive(serde::Serialize, serde::Deserialize)]
struct Model {
    weights: Vec<f32>,
}

#[disk_cache(memory = 10)]
fn train(epochs: u32) -> Model {
    Model { weights: vec![0.0; epochs as usize] }
}

fn main() {
    let _ = train(3).weights;
}
