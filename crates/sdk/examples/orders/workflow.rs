//! The order workflow of the `orders` example (also driven by the SDK's kill -9
//! test): reserve stock, charge the card through a payment gateway that throttles
//! the first two calls, wait for the charge to settle, ship.

use redrive_sdk::{Context, Error, StepError, StepPolicy, policy};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub order: String,
    pub charge_id: String,
    pub tracking: String,
}

/// A fake payment gateway kept in files, so it outlives the process: it
/// throttles the first two charge calls per order, and deduplicates charges by
/// idempotency key like a real gateway does.
pub struct Gateway {
    pub dir: PathBuf,
}

impl Gateway {
    fn ledger(&self) -> PathBuf {
        self.dir.join("charges.log")
    }

    /// Every charge request, `KEY ORDER` a line (throttled ones too).
    fn requests(&self) -> PathBuf {
        self.dir.join("requests.log")
    }

    pub fn charge(&self, order: &Order, idempotency_key: &str) -> Result<String, StepError> {
        append_line(&self.requests(), &format!("{idempotency_key} {}", order.id))?;
        let throttle = self.dir.join(format!("throttled-{}", order.id));
        let calls: u32 = std::fs::read_to_string(&throttle).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        if calls < 2 {
            std::fs::write(&throttle, (calls + 1).to_string()).map_err(|e| StepError::failed(e.to_string()))?;
            return Err(StepError::throttled(format!("payment gateway busy (call {})", calls + 1)));
        }
        let ledger = std::fs::read_to_string(self.ledger()).unwrap_or_default();
        if let Some(line) = ledger.lines().find(|l| l.starts_with(&format!("{idempotency_key} "))) {
            return Ok(line.split(' ').nth(1).unwrap_or_default().to_string()); // a retry of a charge that went through
        }
        let charge_id = format!("ch_{}_{}", order.id, order.cents);
        append_line(&self.ledger(), &format!("{idempotency_key} {charge_id} {}", order.id))?;
        Ok(charge_id)
    }

    /// The idempotency keys of the charge requests for an order, in order.
    pub fn request_keys(&self, order: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.requests()).unwrap_or_default();
        log.lines().filter_map(|l| l.strip_suffix(&format!(" {order}"))).map(str::to_string).collect()
    }

    /// Charges the gateway actually recorded for an order.
    pub fn charges_for(&self, order: &str) -> usize {
        std::fs::read_to_string(self.ledger()).unwrap_or_default().lines().filter(|l| l.ends_with(&format!(" {order}"))).count()
    }
}

pub async fn process_order(ctx: Context, order: Order, gateway: std::sync::Arc<Gateway>) -> Result<Receipt, Error> {
    ctx.step("reserve-stock", StepPolicy::default(), |_| async {
        println!("[{}] reserving stock", order.id);
        Ok(())
    })
    .await?;
    // Throttling is retried: 1 s, then 2 s. While it waits, the execution is
    // suspended — kill the process now and the next run picks it up on time.
    let throttled = policy(["Step.THROTTLING"]).interval_seconds(1.0).backoff_rate(2.0).max_attempts(5).build()?;
    // The gateway deduplicates by the step's idempotency key (the same on every
    // attempt, retry and replay of this step), so an attempt repeated after a
    // crash never charges twice.
    let charge_id: String = ctx
        .step("charge-card", throttled, |step| {
            let (gateway, order) = (&gateway, &order);
            async move {
                let r = gateway.charge(order, step.key().as_str());
                match &r {
                    Ok(id) => println!("[{}] charged: {id}", order.id),
                    Err(e) => println!("[{}] charge failed: {e} (will retry)", order.id),
                }
                r
            }
        })
        .await?;
    // A durable wait. (Code between steps runs again on every replay, so side
    // effects — even a println — belong inside steps.)
    ctx.sleep("settle", Duration::from_secs(2)).await;
    let tracking: String = ctx
        .step("ship", StepPolicy::default(), |_| async {
            println!("[{}] charge settled; shipping", order.id);
            Ok(format!("TRK-{}", order.id))
        })
        .await?;
    Ok(Receipt { order: order.id.clone(), charge_id, tracking })
}

/// Appends one line (in one write, so a kill never leaves half a line) and syncs
/// it, as a gateway's durable log would.
fn append_line(path: &std::path::Path, line: &str) -> Result<(), StepError> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| StepError::failed(e.to_string()))?;
    f.write_all(format!("{line}\n").as_bytes()).map_err(|e| StepError::failed(e.to_string()))?;
    f.sync_all().map_err(|e| StepError::failed(e.to_string()))
}
