"""``python -m frontend --backend URL``: the app on its own (frontend/standalone.py)."""

from frontend.standalone import main

main()
