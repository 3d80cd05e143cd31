//! The Redis harness the store's tests share with the end-to-end tests: the test-support
//! crate's (feature `redis`).

pub use wechat_login_test_support::redis::*;
