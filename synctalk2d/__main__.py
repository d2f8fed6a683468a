from synctalk2d.cli import app

app(prog_name="synctalk2d")
