use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;

fn key(value: &str) -> SlotKey {
    SlotKey { pipeline: "p".into(), stage: "S".into(), action: "A".into(), value: KeyValue::Text(value.into()) }
}

#[test]
fn paths_select_strings_as_they_are_and_other_values_as_json() {
    let input = json!({"tenant": "acme", "n": 7, "c": {"id": [1, {"b": 2, "a": true}]}, "nil": null, "odd key": "x"});
    let sel = |p: &str| KeyPath::parse(p).unwrap().select(&input);
    assert_eq!(sel("$.input.tenant"), KeyValue::Text("acme".into()));
    assert_eq!(sel("$.input.n"), KeyValue::Json("7".into()));
    assert_eq!(sel("$.input.c.id[1]"), KeyValue::Json(r#"{"a":true,"b":2}"#.into()), "object keys sorted");
    assert_eq!(sel("$.input['odd key']"), KeyValue::Text("x".into()));
    assert_eq!(sel("$.input.missing"), KeyValue::Absent);
    assert_eq!(sel("$.input.tenant.deeper"), KeyValue::Absent, "a string has no fields");
    assert_eq!(sel("$.input.c.id[9]"), KeyValue::Absent);
    assert_eq!(sel("$.input.nil"), KeyValue::Absent, "null is absent");
    assert_ne!(sel("$.input.n"), KeyValue::Text("7".into()), "the number 7 and the string \"7\" are different keys");
    assert_eq!(KeyValue::Absent.to_string(), "(absent)");
}

#[test]
fn bad_paths_say_what_is_wrong() {
    for (path, says) in [
        ("$.tenant", "must start with $.input"),
        ("input.tenant", "must start with $.input"),
        ("$.inputs", "unexpected"),
        ("$.input.", "not a field name"),
        ("$.input..a", "not a field name"),
        ("$.input[x]", "neither an index"),
        ("$.input[0", "no closing"),
        ("$.input.a b", "not a field name"),
    ] {
        let e = KeyPath::parse(path).expect_err(path);
        assert!(e.contains(says), "{path}: {e}");
    }
    let long = format!("$.input{}", ".a".repeat(MAX_KEY_PATH_SEGMENTS + 1));
    assert!(KeyPath::parse(&long).unwrap_err().contains("segments"));
    assert!(KeyPath::parse(&format!("$.input.{}", "a".repeat(MAX_KEY_PATH_BYTES))).unwrap_err().contains("bytes"));
}

#[test]
fn long_values_are_bounded_and_stay_distinct() {
    let a = KeyValue::of(&json!("x".repeat(1000)));
    let b = KeyValue::of(&json!(format!("{}y", "x".repeat(999))));
    for v in [&a, &b] {
        assert!(v.text().unwrap().len() <= MAX_KEY_VALUE_BYTES, "{v}");
    }
    assert_ne!(a, b, "the hash of the whole value tells them apart");
    let multibyte = KeyValue::of(&json!("é".repeat(200)));
    assert!(multibyte.text().unwrap().len() <= MAX_KEY_VALUE_BYTES);
}

#[test]
fn max_is_bounded() {
    let path = KeyPath::parse("$.input.tenant").unwrap();
    assert!(Concurrency::new(path.clone(), 0).is_err());
    assert!(Concurrency::new(path.clone(), MAX_KEY_CONCURRENCY + 1).is_err());
    assert_eq!(Concurrency::new(path, MAX_KEY_CONCURRENCY).unwrap().max(), MAX_KEY_CONCURRENCY);
}

#[test]
fn a_full_key_queues_in_order_and_a_release_hands_the_slot_on() {
    let mut s = KeySlots::default();
    assert_eq!(s.acquire(key("a"), 2, 1), vec![1]);
    assert_eq!(s.acquire(key("a"), 2, 2), vec![2]);
    assert_eq!(s.acquire(key("a"), 2, 3), Vec::<u32>::new());
    assert_eq!(s.acquire(key("a"), 2, 4), Vec::<u32>::new());
    assert_eq!(s.acquire(key("b"), 2, 5), vec![5], "another key is not blocked");
    assert_eq!(s.view(&key("a")), Some(KeyView { running: 2, max: 2, waiting: 2 }));
    assert!(s.cancel(&key("a"), &3));
    assert!(!s.cancel(&key("a"), &3), "cancelled once");
    assert_eq!(s.release(&key("a")), vec![4]);
    assert_eq!(s.release(&key("a")), Vec::<u32>::new());
    assert_eq!(s.release(&key("a")), Vec::<u32>::new());
    assert_eq!(s.view(&key("a")), None, "an idle key is forgotten");
    assert_eq!(s.release(&key("b")), Vec::<u32>::new());
    assert_eq!(s.waiting_total(), 0);
}

#[test]
fn a_raised_max_lets_more_run_at_once_and_a_lowered_one_waits_for_releases() {
    let mut s = KeySlots::default();
    s.acquire(key("a"), 1, 1);
    s.acquire(key("a"), 1, 2);
    assert_eq!(s.acquire(key("a"), 3, 3), vec![2, 3], "the new declaration's max applies, front first");
    assert_eq!(s.acquire(key("a"), 1, 4), Vec::<u32>::new());
    assert_eq!(s.release(&key("a")), Vec::<u32>::new(), "3 running, max 1: 2 still run");
    assert_eq!(s.release(&key("a")), Vec::<u32>::new());
    assert_eq!(s.release(&key("a")), vec![4]);
}

#[derive(Clone, Debug)]
enum Op {
    Acquire(u8),
    /// Releases the n-th running attempt (mod how many run).
    Release(usize),
    /// Cancels the n-th waiter (mod how many wait).
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4).prop_map(Op::Acquire),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Cancel),
    ]
}

/// Key `k`'s max in the property tests: 1, 2, 3, 1.
fn max_of(k: u8) -> u32 {
    u32::from(k % 3) + 1
}

#[derive(Default)]
struct Model {
    slots: KeySlots<u32>,
    next: u32,
    key_of: HashMap<u32, u8>,
    running: Vec<u32>,
    waiting: Vec<u32>,
    /// Per key: the order waiters arrived, and the order they were granted.
    arrived: HashMap<u8, Vec<u32>>,
    granted: HashMap<u8, Vec<u32>>,
    cancelled: Vec<u32>,
}

impl Model {
    fn started(&mut self, run: Vec<u32>) {
        for w in run {
            assert!(!self.running.contains(&w), "{w} granted twice");
            self.waiting.retain(|x| *x != w);
            self.running.push(w);
            self.granted.entry(self.key_of[&w]).or_default().push(w);
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Acquire(k) => {
                self.next += 1;
                let w = self.next;
                self.key_of.insert(w, k);
                self.arrived.entry(k).or_default().push(w);
                self.waiting.push(w);
                let run = self.slots.acquire(key(&k.to_string()), max_of(k), w);
                self.started(run);
            }
            Op::Release(n) if !self.running.is_empty() => {
                let w = self.running.remove(n % self.running.len());
                let run = self.slots.release(&key(&self.key_of[&w].to_string()));
                self.started(run);
            }
            Op::Cancel(n) if !self.waiting.is_empty() => {
                let w = self.waiting.remove(n % self.waiting.len());
                assert!(self.slots.cancel(&key(&self.key_of[&w].to_string()), &w));
                self.cancelled.push(w);
            }
            _ => {}
        }
    }

    fn check(&self) {
        for k in 0u8..4 {
            let running = self.running.iter().filter(|w| self.key_of[w] == k).count() as u32;
            let waiting = self.waiting.iter().filter(|w| self.key_of[w] == k).count();
            assert!(running <= max_of(k), "key {k}: {running} running, max {}", max_of(k));
            if waiting > 0 {
                assert_eq!(running, max_of(k), "key {k} has waiters while a slot of it is free");
            }
            let view = self.slots.view(&key(&k.to_string())).unwrap_or(KeyView { running: 0, max: max_of(k), waiting: 0 });
            assert_eq!((view.running, view.waiting), (running, waiting), "key {k}: the slots agree with the model");
        }
        assert_eq!(self.slots.waiting_total(), self.waiting.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Never more than max running per key; a waiter waits only while its own key
    /// is full (a hot key never blocks another); FIFO per key; and once every
    /// running attempt ends, every waiter not cancelled has run: nothing dropped.
    #[test]
    fn keys_are_bounded_fair_and_lose_nothing(ops in prop::collection::vec(op(), 0..200)) {
        let mut m = Model::default();
        for op in ops {
            m.step(op);
            m.check();
        }
        while !m.running.is_empty() {
            m.step(Op::Release(0));
            m.check();
        }
        prop_assert!(m.waiting.is_empty(), "left waiting: {:?}", m.waiting);
        for (k, arrived) in &m.arrived {
            let expected: Vec<u32> = arrived.iter().copied().filter(|w| !m.cancelled.contains(w)).collect();
            prop_assert_eq!(m.granted.get(k).cloned().unwrap_or_default(), expected, "key {} in arrival order", k);
        }
        prop_assert_eq!(m.slots.view(&key("0")), None);
    }
}
