"""Sample support tickets for the demo and the tests."""

SAMPLE_TICKETS = [
    {
        "ticket_id": "T-1001",
        "customer": "Dana Whitfield (Acme Logistics)",
        "channel": "email",
        "subject": "Charged twice for the annual plan",
        "body": (
            "Hi, our card was charged twice for the Pro annual plan on invoice INV-20931. We only have one "
            "workspace. Please refund the duplicate charge of $1,188 as soon as possible; our finance team is "
            "asking about it and this is the second time it has happened this year."
        ),
    },
    {
        "ticket_id": "T-1002",
        "customer": "Ravi Menon (Northwind Studio)",
        "channel": "chat",
        "subject": "Export to PDF crashes with error E-4012",
        "body": (
            "Since yesterday's update, every time I export a report to PDF the desktop app crashes with error "
            "E-4012. It happens on two Windows 11 laptops. We have a client presentation tomorrow morning and "
            "this is blocking the whole team. Order ORD-55817."
        ),
    },
    {
        "ticket_id": "T-1003",
        "customer": "Lena Okafor (Brightline Health)",
        "channel": "email",
        "subject": "How do I add SSO for our staff?",
        "body": (
            "We would like to let our 40 staff sign in with Okta single sign-on. Is SSO included in the Business "
            "plan, and is there a guide for setting it up? No rush, we are planning the rollout for next month."
        ),
    },
    {
        "ticket_id": "T-1004",
        "customer": "Marco Bellini (Bellini & Figli)",
        "channel": "phone",
        "subject": "Thinking about cancelling",
        "body": (
            "Honestly the mobile app has been slow and unreliable for weeks and the sync keeps failing. Support "
            "has not answered my last two emails. If this is not fixed this week we will cancel our subscription "
            "and move the team to another tool."
        ),
    },
]

# The demo leaves this one waiting for a person: it is escalated, so its review stage waits for an answer in the
# admin (the demo answers the reviews of the tickets above itself, through ``engine.signal``).
WAITING_TICKET = {
    "ticket_id": "T-1005",
    "customer": "Yuki Tanaka (Harbor & Co.)",
    "channel": "web",
    "subject": "Sync failing, we will cancel",
    "body": (
        "The mobile app sync has been failing since Monday and nobody has answered our emails. If this is not "
        "fixed this week we will cancel and move the team to another tool."
    ),
}
