//! The portal's per-method operating-time limit (API reference §6.2). Each successful answer says
//! how many seconds the method has used in the sliding ten-minute window (`time.operating`) and when
//! the oldest minute of that window expires (`time.operating_reset_at`). After a 429
//! `OPERATION_TIME_LIMIT` the method stays blocked until that moment; other methods keep working.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The limit all three SDKs assume (480 s of method time per 10 minutes).
const LIMIT_SECS: f64 = 480.0;
/// Past this share of the limit, calls to the method are spaced out (b24jssdk's adaptive pause).
const SLOW_DOWN_SHARE: f64 = 0.8;
const SLOW_DOWN_MAX: Duration = Duration::from_secs(7);
/// Block after a 429 when no answer has told us the reset time.
const UNKNOWN_RESET_BLOCK: Duration = Duration::from_secs(10);
/// The window is ten minutes, so no reset is further away than this.
const MAX_BLOCK: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    reset_at: Option<SystemTime>,
    blocked_until: Option<SystemTime>,
}

impl Window {
    /// Answers arrive out of order: a block only ever grows.
    fn extend_block(&mut self, until: SystemTime) -> SystemTime {
        let until = self.blocked_until.map_or(until, |b| b.max(until));
        self.blocked_until = Some(until);
        until
    }
}

/// What this process knows about each method's window, shared by all its Bitrix24 calls.
#[derive(Debug, Default)]
pub struct OperatingLimits {
    methods: Mutex<HashMap<String, Window>>,
}

impl OperatingLimits {
    /// Reads the `time` block of a successful answer. Near the limit, the next call of the method
    /// is delayed a little, so the portal is not driven into blocking it.
    pub fn observe(&self, method: &str, time: &Value) {
        let Some(reset_at) = number(&time["operating_reset_at"]).and_then(unix_time) else {
            return;
        };
        let now = SystemTime::now();
        let mut methods = self.methods.lock().expect("operating lock");
        let w = methods.entry(method.to_string()).or_default();
        w.reset_at = Some(reset_at);
        let used = number(&time["operating"]).unwrap_or(0.0);
        if used >= LIMIT_SECS * SLOW_DOWN_SHARE {
            let to_reset = reset_at.duration_since(now).unwrap_or_default();
            let pause = to_reset.mul_f64(0.01).min(SLOW_DOWN_MAX);
            tracing::info!(
                method,
                operating = used,
                "method time near the portal's limit; pausing {pause:?}"
            );
            w.extend_block(now + pause);
        }
    }

    /// A `batch` answer carries each command's own `result_time`; the commands count against their
    /// own methods' windows, not against `batch`.
    pub fn observe_batch(&self, params: &Value, envelope: &Value) {
        let Some(cmds) = params["cmd"].as_object() else {
            return;
        };
        let times = &envelope["result"]["result_time"];
        for (key, cmd) in cmds {
            let Some(cmd) = cmd.as_str() else { continue };
            let method = cmd.split_once('?').map_or(cmd, |(m, _)| m);
            self.observe(method, &times[key.as_str()]);
        }
    }

    /// Records a 429 for `method` and returns when it may be called again: the reset time from the
    /// last successful answer, or a short default when none is known.
    pub fn block(&self, method: &str) -> SystemTime {
        let now = SystemTime::now();
        let mut methods = self.methods.lock().expect("operating lock");
        let w = methods.entry(method.to_string()).or_default();
        let until = match w.reset_at.filter(|r| *r > now) {
            Some(reset) => reset.min(now + MAX_BLOCK).max(now + Duration::from_secs(1)),
            None => now + UNKNOWN_RESET_BLOCK,
        };
        // The known reset has been used up; a second 429 falls back to the default.
        w.reset_at = None;
        w.extend_block(until)
    }

    /// When `method` may be called again, if it is blocked now.
    pub fn blocked_until(&self, method: &str) -> Option<SystemTime> {
        let methods = self.methods.lock().expect("operating lock");
        methods
            .get(method)
            .and_then(|w| w.blocked_until)
            .filter(|until| *until > SystemTime::now())
    }

    /// For a `batch`, the latest block among the methods its commands call.
    pub fn blocked_until_call(&self, method: &str, params: &Value) -> Option<SystemTime> {
        let own = self.blocked_until(method);
        if method != "batch" {
            return own;
        }
        let inner = params["cmd"]
            .as_object()
            .into_iter()
            .flat_map(|cmds| cmds.values())
            .filter_map(Value::as_str)
            .filter_map(|cmd| self.blocked_until(cmd.split_once('?').map_or(cmd, |(m, _)| m)));
        own.into_iter().chain(inner).max()
    }
}

/// The portal sends numbers, and some versions numeric strings (UNCONFIRMED shapes accepted).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unix_time(secs: f64) -> Option<SystemTime> {
    (secs.is_finite() && secs > 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn in_secs(until: SystemTime) -> f64 {
        until
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs_f64()
    }

    fn unix_now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn a_429_blocks_the_method_until_the_reset_the_portal_announced() {
        let limits = OperatingLimits::default();
        let reset = unix_now() + 120.0;
        limits.observe(
            "crm.item.get",
            &json!({"operating": 12.5, "operating_reset_at": reset as i64}),
        );
        assert!(limits.blocked_until("crm.item.get").is_none());
        let until = limits.block("crm.item.get");
        assert!((118.0..=121.0).contains(&in_secs(until)));
        assert_eq!(limits.blocked_until("crm.item.get"), Some(until));
        assert!(limits.blocked_until("crm.item.list").is_none());
    }

    #[test]
    fn without_a_known_reset_a_429_blocks_for_ten_seconds() {
        let limits = OperatingLimits::default();
        let until = limits.block("batch");
        assert!((9.0..=10.0).contains(&in_secs(until)));
    }

    #[test]
    fn near_the_limit_the_method_is_spaced_out() {
        let limits = OperatingLimits::default();
        let reset = unix_now() + 300.0;
        limits.observe(
            "crm.item.list",
            &json!({"operating": "400.1", "operating_reset_at": reset.to_string()}),
        );
        let until = limits.blocked_until("crm.item.list").expect("a pause");
        assert!((2.0..=3.1).contains(&in_secs(until)));
    }

    #[test]
    fn answers_without_a_time_block_change_nothing() {
        let limits = OperatingLimits::default();
        limits.observe("crm.item.get", &Value::Null);
        limits.observe("crm.item.get", &json!({"operating_reset_at": "soon"}));
        assert!(limits.blocked_until("crm.item.get").is_none());
    }

    #[test]
    fn a_batch_answer_feeds_each_commands_own_method() {
        let limits = OperatingLimits::default();
        let reset = unix_now() + 60.0;
        let params = json!({"halt": 0, "cmd": {"a": "crm.item.update?entityTypeId=1040&id=1", "b": "crm.timeline.comment.add?x=1"}});
        let answer = json!({"result": {"result": {}, "result_time": {
            "a": {"operating": 450, "operating_reset_at": reset},
            "b": {"operating": 1, "operating_reset_at": reset}}}});
        limits.observe_batch(&params, &answer);
        assert!(limits.blocked_until("crm.item.update").is_some());
        assert!(limits.blocked_until("crm.timeline.comment.add").is_none());
        assert!(limits.blocked_until("batch").is_none());
        let until = limits.block("crm.timeline.comment.add");
        assert!((58.0..=61.0).contains(&in_secs(until)));
        // A later batch of the blocked command waits for it.
        assert_eq!(limits.blocked_until_call("batch", &params), Some(until));
    }

    #[test]
    fn a_later_answer_never_shortens_a_block() {
        let limits = OperatingLimits::default();
        let reset = unix_now() + 300.0;
        limits.observe("crm.item.get", &json!({"operating_reset_at": reset}));
        let long = limits.block("crm.item.get");
        // A second 429 (reset now unknown) and a late answer near the limit.
        assert_eq!(limits.block("crm.item.get"), long);
        limits.observe(
            "crm.item.get",
            &json!({"operating": 470, "operating_reset_at": reset}),
        );
        assert_eq!(limits.blocked_until("crm.item.get"), Some(long));
    }
}
