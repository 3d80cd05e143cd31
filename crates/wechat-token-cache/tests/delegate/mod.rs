//! `delegate!`: the `SessionStore` methods a test store passes unchanged to the store it wraps,
//! so each wrapper writes out only the methods it changes.

/// In an `impl SessionStore`, `delegate!(field: get, insert, ...)` writes each named method as
/// the same call on `self.field` (`inner`, or `0` for a tuple struct).
macro_rules! delegate {
    (@ $field:tt get) => {
        async fn get(
            &self,
            sid: &::wechat_token_cache::SessionId,
        ) -> Result<
            Option<::std::sync::Arc<::wechat_token_cache::SessionRecord>>,
            ::wechat_token_cache::StoreError,
        > {
            self.$field.get(sid).await
        }
    };
    (@ $field:tt insert) => {
        async fn insert(
            &self,
            record: ::wechat_token_cache::SessionRecord,
        ) -> Result<
            ::std::sync::Arc<::wechat_token_cache::SessionRecord>,
            ::wechat_token_cache::StoreError,
        > {
            self.$field.insert(record).await
        }
    };
    (@ $field:tt compare_and_set) => {
        async fn compare_and_set(
            &self,
            expected: u64,
            record: ::wechat_token_cache::SessionRecord,
        ) -> Result<::wechat_token_cache::CasOutcome, ::wechat_token_cache::StoreError> {
            self.$field.compare_and_set(expected, record).await
        }
    };
    (@ $field:tt delete) => {
        async fn delete(
            &self,
            sid: &::wechat_token_cache::SessionId,
        ) -> Result<bool, ::wechat_token_cache::StoreError> {
            self.$field.delete(sid).await
        }
    };
    (@ $field:tt delete_user) => {
        async fn delete_user(
            &self,
            user: &::wechat_token_cache::UserId,
        ) -> Result<usize, ::wechat_token_cache::StoreError> {
            self.$field.delete_user(user).await
        }
    };
    ($field:tt: $($method:ident),+ $(,)?) => {
        $(delegate!(@ $field $method);)+
    };
}
