/// Every Redis key and channel name, all under one configurable prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Any other key under the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Pub/sub channel of job lifecycle events.
    pub fn events_channel(&self) -> String {
        self.key("events")
    }

    /// Request stream of one RPC target (a served trial, an advised sub job).
    pub fn request_stream(&self, target: &str) -> String {
        self.key(&format!("stream:{target}"))
    }

    /// The pattern matching every request stream (for `SCAN`).
    pub fn request_stream_pattern(&self) -> String {
        self.key("stream:*")
    }

    /// The RPC target of a request stream key, if it is one.
    pub fn target_of_stream<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("stream:")
    }

    /// Reply list of one requesting instance.
    pub fn reply_list(&self, instance: &str) -> String {
        self.key(&format!("replies:{instance}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_prefix() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.events_channel(), "t1:events");
        assert_eq!(keys.request_stream("trial-7"), "t1:stream:trial-7");
        assert_eq!(keys.target_of_stream("t1:stream:trial-7"), Some("trial-7"));
        assert_eq!(keys.target_of_stream("t2:stream:trial-7"), None);
        assert_eq!(keys.reply_list("p1"), "t1:replies:p1");
    }
}
