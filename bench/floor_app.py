"""The floor for bench/webhook: bare Flask answering TwiML built with VoiceResponse.

The same shape of answer as our first question (a Gather with Says, then a Redirect),
with no signature check, no menu, no events: what any Flask + twilio app costs.
"""

from flask import Flask, Response
from twilio.twiml.voice_response import Gather, VoiceResponse

app = Flask(__name__)


@app.post("/voice")
def voice():
    response = VoiceResponse()
    gather = Gather(input="dtmf speech", action="/voice/menu?l=es&s=1", num_digits=1,
                    timeout=6, language="es-CO")
    gather.say("Línea Ruta. Su llamada es confidencial.", voice="Polly.Lupe-Neural",
               language="es-US")
    gather.say("Si alguien está en peligro ahora, marque 0.", voice="Polly.Lupe-Neural",
               language="es-US")
    response.append(gather)
    response.redirect("/voice/menu?l=es&s=1", method="POST")
    return Response(str(response), mimetype="text/xml")


def create_app():
    return app
