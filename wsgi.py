from counts import create_app

app = create_app()
