//! The WeChat apps one layer serves: [`AppKind`] (mobile app, website, Official Account, Mini
//! Program) and which AppID serves each kind. Each login endpoint is bound to one kind; a
//! session records its AppID, and its kind is looked up here.

use std::fmt;
use std::str::FromStr;

use wechat_oauth::AppId;

/// The kind of a WeChat app, which decides how its users log in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AppKind {
    /// A mobile app (Open Platform): the app posts the code of the WeChat SDK's login.
    MobileApp,
    /// A website (Open Platform): QR login in the browser (`qrconnect`).
    Website,
    /// An Official Account: pages inside WeChat (`oauth2/authorize`).
    OfficialAccount,
    /// A Mini Program: the code of `wx.login()` (`jscode2session`).
    MiniProgram,
}

impl AppKind {
    /// Every kind.
    pub const ALL: [AppKind; 4] = [
        Self::MobileApp,
        Self::Website,
        Self::OfficialAccount,
        Self::MiniProgram,
    ];

    /// A short stable name: `mobile`, `web`, `oa`, `mp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MobileApp => "mobile",
            Self::Website => "web",
            Self::OfficialAccount => "oa",
            Self::MiniProgram => "mp",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::MobileApp => 0,
            Self::Website => 1,
            Self::OfficialAccount => 2,
            Self::MiniProgram => 3,
        }
    }
}

impl fmt::Display for AppKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of `mobile`, `web`, `oa`, `mp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an app kind: expected mobile, web, oa or mp")]
pub struct UnknownAppKind;

impl FromStr for AppKind {
    type Err = UnknownAppKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(UnknownAppKind)
    }
}

/// Which AppID serves each kind (several kinds may share one AppID).
#[derive(Clone, Debug, Default)]
pub(crate) struct Apps {
    by_kind: [Option<AppId>; 4],
}

impl Apps {
    pub(crate) fn bind(&mut self, kind: AppKind, appid: AppId) {
        self.by_kind[kind.index()] = Some(appid);
    }

    /// The AppID serving `kind`, if one does.
    pub(crate) fn app(&self, kind: AppKind) -> Option<&AppId> {
        self.by_kind[kind.index()].as_ref()
    }

    /// The kind an AppID serves (the first, if it serves several).
    pub(crate) fn kind_of(&self, appid: &AppId) -> Option<AppKind> {
        AppKind::ALL
            .into_iter()
            .find(|kind| self.app(*kind) == Some(appid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_apps_bind() {
        for kind in AppKind::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
        }
        assert_eq!("desktop".parse::<AppKind>(), Err(UnknownAppKind));
        let mut apps = Apps::default();
        apps.bind(AppKind::MobileApp, AppId::new("wxa"));
        apps.bind(AppKind::MiniProgram, AppId::new("wxm"));
        assert_eq!(apps.app(AppKind::Website), None);
        assert_eq!(apps.kind_of(&AppId::new("wxm")), Some(AppKind::MiniProgram));
        assert_eq!(apps.kind_of(&AppId::new("wxz")), None);
    }
}
