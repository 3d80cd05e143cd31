//! [`LoginFlow`]: the way a code reached the server, which the login hook is told and a code's
//! remembered outcome is bound to.

/// The way a code reached the server. A code used through one flow never opens a session
/// through another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginFlow {
    /// A code a client posts (mobile app, or a website's own front end), exchanged at
    /// `/sns/oauth2/access_token`.
    Code,
    /// A Mini Program `wx.login()` code, exchanged at `/sns/jscode2session`.
    MiniProgram,
    /// The website (QR login) callback.
    WebCallback,
    /// The Official Account callback (inside WeChat, where no binding cookie survives).
    OfficialAccountCallback,
    /// A scan of an Official Account's QR code (or a keyword sent to it), reported by WeChat's
    /// signed push: no code, the openid vouched for by the push.
    Scan,
}

impl LoginFlow {
    /// The flow's metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::MiniProgram => "mini_program",
            Self::WebCallback => "website",
            Self::OfficialAccountCallback => "official_account",
            Self::Scan => "scan",
        }
    }

    /// The flow's byte in a shared login outcome.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Self::Code => 0,
            Self::MiniProgram => 1,
            Self::WebCallback => 2,
            Self::OfficialAccountCallback => 3,
            Self::Scan => 4,
        }
    }

    /// The flow a shared login outcome's byte names.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Code,
            1 => Self::MiniProgram,
            2 => Self::WebCallback,
            3 => Self::OfficialAccountCallback,
            4 => Self::Scan,
            _ => return None,
        })
    }
}
