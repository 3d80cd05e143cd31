//! What the crate's integration tests share: a client of one app of the fake WeChat.
#![allow(dead_code)]

use wechat_mock::MockWeChat;
use wechat_oauth::{AppId, AppSecret, Client};

/// A client of the app `appid` (with `secret`) at the fake WeChat `mock`.
pub fn client(mock: &MockWeChat, appid: &str, secret: &str) -> Client {
    Client::builder(AppId::new(appid), AppSecret::new(secret))
        .api_base(mock.base_url())
        .open_base(mock.base_url())
        .build()
        .unwrap()
}
