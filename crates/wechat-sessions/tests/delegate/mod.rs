//! `delegate!`: the `SessionStore` and `SharedStore` methods a test store passes unchanged to
//! the store it wraps, so each wrapper writes out only the methods it changes.

/// In an `impl SessionStore` or `impl SharedStore`, `delegate!(field: get, insert, ...)` writes
/// each named method as the same call on `self.field` (`inner`, or `0` for a tuple struct);
/// `delegate!(field: shared)` writes every `SharedStore` method.
macro_rules! delegate {
    (@ $field:tt get) => {
        async fn get(
            &self,
            sid: &::wechat_sessions::SessionId,
        ) -> Result<
            Option<::std::sync::Arc<::wechat_sessions::SessionRecord>>,
            ::wechat_sessions::StoreError,
        > {
            self.$field.get(sid).await
        }
    };
    (@ $field:tt insert) => {
        async fn insert(
            &self,
            record: ::wechat_sessions::SessionRecord,
        ) -> Result<
            ::std::sync::Arc<::wechat_sessions::SessionRecord>,
            ::wechat_sessions::StoreError,
        > {
            self.$field.insert(record).await
        }
    };
    (@ $field:tt compare_and_set) => {
        async fn compare_and_set(
            &self,
            expected: u64,
            record: ::wechat_sessions::SessionRecord,
        ) -> Result<::wechat_sessions::CasOutcome, ::wechat_sessions::StoreError> {
            self.$field.compare_and_set(expected, record).await
        }
    };
    (@ $field:tt delete) => {
        async fn delete(
            &self,
            sid: &::wechat_sessions::SessionId,
        ) -> Result<bool, ::wechat_sessions::StoreError> {
            self.$field.delete(sid).await
        }
    };
    (@ $field:tt delete_user) => {
        async fn delete_user(
            &self,
            user: &::wechat_sessions::UserId,
        ) -> Result<usize, ::wechat_sessions::StoreError> {
            self.$field.delete_user(user).await
        }
    };
    (@ $field:tt user_sessions) => {
        async fn user_sessions(
            &self,
            user: &::wechat_sessions::UserId,
        ) -> Result<
            Vec<::std::sync::Arc<::wechat_sessions::SessionRecord>>,
            ::wechat_sessions::StoreError,
        > {
            self.$field.user_sessions(user).await
        }
    };
    (@ $field:tt get_shared) => {
        async fn get_shared(
            &self,
            sid: &::wechat_sessions::SessionId,
        ) -> Result<
            Option<::std::sync::Arc<::wechat_sessions::SessionRecord>>,
            ::wechat_sessions::StoreError,
        > {
            self.$field.get_shared(sid).await
        }
    };
    (@ $field:tt leases) => {
        async fn try_lease(
            &self,
            name: &str,
            owner: &str,
            ttl: ::std::time::Duration,
        ) -> Result<bool, ::wechat_sessions::StoreError> {
            self.$field.try_lease(name, owner, ttl).await
        }
        async fn renew_lease(
            &self,
            name: &str,
            owner: &str,
            ttl: ::std::time::Duration,
        ) -> Result<bool, ::wechat_sessions::StoreError> {
            self.$field.renew_lease(name, owner, ttl).await
        }
        async fn release_lease(
            &self,
            name: &str,
            owner: &str,
        ) -> Result<(), ::wechat_sessions::StoreError> {
            self.$field.release_lease(name, owner).await
        }
    };
    (@ $field:tt values) => {
        async fn put_value_if_absent(
            &self,
            key: &str,
            value: Vec<u8>,
            ttl: ::std::time::Duration,
        ) -> Result<Option<Vec<u8>>, ::wechat_sessions::StoreError> {
            self.$field.put_value_if_absent(key, value, ttl).await
        }
        async fn get_value(
            &self,
            key: &str,
        ) -> Result<Option<Vec<u8>>, ::wechat_sessions::StoreError> {
            self.$field.get_value(key).await
        }
        async fn put_secret(
            &self,
            key: &str,
            value: Vec<u8>,
            ttl: ::std::time::Duration,
        ) -> Result<(), ::wechat_sessions::StoreError> {
            self.$field.put_secret(key, value, ttl).await
        }
        async fn get_secret(
            &self,
            key: &str,
        ) -> Result<Option<Vec<u8>>, ::wechat_sessions::StoreError> {
            self.$field.get_secret(key).await
        }
    };
    (@ $field:tt shared) => {
        delegate!(@ $field get_shared);
        delegate!(@ $field leases);
        delegate!(@ $field values);
    };
    ($field:tt: $($method:ident),+ $(,)?) => {
        $(delegate!(@ $field $method);)+
    };
}
