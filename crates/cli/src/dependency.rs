//! `redrive dependency list|show NAME`: retry budgets and circuit breakers as
//! the server's engine holds them now.

use crate::OutputFormat;
use crate::exit;
use crate::present::Table;
use crate::remote::{Remote, print_json, run};
use redrive_wire as w;

#[derive(clap::Subcommand)]
pub enum DependencyCommand {
    /// Every dependency the server knows: breaker state, retries used in the
    /// budget's window against what it allows, attempts held.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// One dependency: its settings and state.
    Show {
        /// The dependency's name (an http action's default is its URL's host).
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn dependency(command: DependencyCommand) -> u8 {
    match command {
        DependencyCommand::List { remote } => run(&remote, |c, out| async move {
            let v = c.dependencies().await?;
            if out == OutputFormat::Json {
                print_json(&v);
                return Ok(exit::SUCCEEDED);
            }
            let mut t = Table::new(&["NAME", "BREAKER", "OPENED", "BUDGET USED", "HELD", "DEFERRED"]);
            t.align_right(&[4, 5]);
            for d in &v.dependencies {
                t.row(vec![
                    d.name.clone(),
                    breaker_cell(d),
                    d.breaker.as_ref().and_then(|b| b.opened_at.clone()).unwrap_or_else(|| "-".into()),
                    budget_cell(d),
                    d.attempts_held.to_string(),
                    d.attempts_deferred.to_string(),
                ]);
            }
            if t.is_empty() {
                println!("no dependencies (declare them under dependencies: in a pipeline or the server config)");
            } else {
                print!("{}", t.render());
            }
            Ok(exit::SUCCEEDED)
        }),
        DependencyCommand::Show { name, remote } => run(&remote, |c, out| async move {
            let d = c.dependency(&name).await?;
            if out == OutputFormat::Json {
                print_json(&d);
                return Ok(exit::SUCCEEDED);
            }
            print!("{}", show_text(&d));
            Ok(exit::SUCCEEDED)
        }),
    }
}

fn breaker_cell(d: &w::DependencyStatus) -> String {
    match &d.breaker {
        None => "-".into(),
        Some(b) => match (&b.state, &b.open_until) {
            (w::BreakerState::Open, Some(until)) => format!("open until {until}"),
            (w::BreakerState::Closed, _) if b.consecutive_failures > 0 => format!("closed ({} failures)", b.consecutive_failures),
            (state, _) => state.to_string(),
        },
    }
}

fn budget_cell(d: &w::DependencyStatus) -> String {
    match &d.budget {
        None => "-".into(),
        Some(b) => format!("{} of {} retries in {}s", b.retries, b.allowed.floor(), b.window_seconds),
    }
}

fn show_text(d: &w::DependencyStatus) -> String {
    let mut out = format!("dependency {}\n", d.name);
    match &d.retry_budget {
        Some(b) => out.push_str(&format!(
            "retry budget:    ratio {}, minRetriesPerSecond {}, window {}s\n",
            b.ratio, b.min_retries_per_second, b.window_seconds
        )),
        None => out.push_str("retry budget:    none\n"),
    }
    match &d.circuit_breaker {
        Some(c) => out.push_str(&format!(
            "circuit breaker: failureThreshold {}, coolDown {}, halfOpenProbes {}\n",
            c.failure_threshold,
            redrive_core::time::human_duration_ms(c.cool_down_ms),
            c.half_open_probes
        )),
        None => out.push_str("circuit breaker: none\n"),
    }
    out.push_str(&format!("breaker:         {}\n", breaker_cell(d)));
    if let Some(at) = d.breaker.as_ref().and_then(|b| b.opened_at.as_ref()) {
        out.push_str(&format!("opened at:       {at}\n"));
    }
    if let Some(b) = &d.budget {
        out.push_str(&format!("budget used:     {} (first attempts in window: {})\n", budget_cell(d), b.first_attempts));
    }
    out.push_str(&format!("attempts held:   {}\nattempts deferred since start: {}\n", d.attempts_held, d.attempts_deferred));
    out
}
