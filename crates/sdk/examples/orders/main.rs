//! An order workflow as a durable function.
//!
//! ```sh
//! cargo run -p redrive-sdk --example orders -- [--db orders.db] [ORDER_ID]
//! ```
//!
//! The payment gateway throttles the first two charges; the step retries after
//! 1 s and 2 s with the execution suspended in between. Kill the program at any
//! moment (Ctrl-C, `kill -9`) and run the same command again: completed steps are
//! not repeated, the waiting retry fires on time, and the card is charged once.

mod workflow;

use redrive_sdk::Engine;
use std::sync::Arc;
use workflow::{Gateway, Order, Receipt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut db = "orders.db".to_string();
    let mut order_id = "order-123".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--db" => db = args.next().ok_or("--db needs a path")?,
            "-h" | "--help" => {
                println!("usage: orders [--db PATH] [ORDER_ID]   (default: --db orders.db order-123)");
                return Ok(());
            }
            other => order_id = other.to_string(),
        }
    }
    let dir = std::path::Path::new(&db).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")).to_path_buf();
    let gateway = Arc::new(Gateway { dir });
    let engine = Engine::open(&format!("sqlite://{db}")).await?;
    let g = gateway.clone();
    engine.register("process-order", move |ctx, order: Order| workflow::process_order(ctx, order, g.clone()));
    let order = Order { id: order_id.clone(), cents: 4200 };
    // The order id is the execution name: running the program again continues
    // the same execution instead of starting a second one.
    let handle = engine.start("process-order", &order_id, &order).await?;
    println!("execution {} for {order_id}", handle.id());
    let receipt: Receipt = handle.result().await?;
    println!("done: {receipt:?}");
    println!("charges recorded by the gateway for {order_id}: {}", gateway.charges_for(&order_id));
    // Every attempt of the charge step, in any process, sent the step's one key.
    println!("charge requests (by idempotency key): {:?}", gateway.request_keys(&order_id));
    engine.shutdown().await;
    Ok(())
}
