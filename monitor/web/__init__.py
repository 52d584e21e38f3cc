"""The admin web app (issue 16): pages, and what they draw."""
