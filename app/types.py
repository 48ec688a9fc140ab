"""Vocabulary shared across Baton: token type URNs, grant type, small aliases."""

from __future__ import annotations

from typing import Final

Jti = str
ClientId = str

GRANT_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"

TT_ACCESS_TOKEN: Final = "urn:ietf:params:oauth:token-type:access_token"
TT_JWT: Final = "urn:ietf:params:oauth:token-type:jwt"
TT_ID_TOKEN: Final = "urn:ietf:params:oauth:token-type:id_token"
TT_REFRESH_TOKEN: Final = "urn:ietf:params:oauth:token-type:refresh_token"

#: subject/actor token types Baton accepts, by URN -> short kind used in config
ACCEPTED_TOKEN_TYPES: Final = {
    TT_ACCESS_TOKEN: "access_token",
    TT_JWT: "jwt",
    TT_ID_TOKEN: "id_token",
}
#: token types Baton can issue (requested_token_type)
ISSUABLE_TOKEN_TYPES: Final = (TT_ACCESS_TOKEN, TT_JWT)

CLIENT_ASSERTION_TYPE_JWT: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
