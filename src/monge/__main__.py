from monge.cli.main import app

app()
