"""The admin and coordinator web app (`monitor serve`)."""
