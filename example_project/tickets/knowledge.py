"""A tiny knowledge base: the ``embed`` stage suggests the article nearest to each ticket's summary."""

ARTICLES = [
    {
        "id": "KB-101",
        "title": "Refunds and duplicate charges",
        "text": "refund duplicate charge invoice billing card payment",
    },
    {
        "id": "KB-204",
        "title": "Fixing crashes when exporting reports",
        "text": "export pdf crash error desktop app update",
    },
    {
        "id": "KB-310",
        "title": "Setting up single sign-on (SSO)",
        "text": "sso single sign-on okta saml login staff plan",
    },
    {"id": "KB-415", "title": "Mobile sync troubleshooting", "text": "mobile app sync slow failing unreliable"},
    {"id": "KB-520", "title": "Changing or cancelling your plan", "text": "cancel subscription plan downgrade account"},
]
