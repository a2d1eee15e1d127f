from ivr.simulator import Move


def test_a_child_case_by_speech_reaches_icbf(simulate):
    call = simulate([Move("say", "mi hija de doce años")])
    assert call.dialed == ["+5718000918080"]  # ICBF's toll-free line, E.164
    assert call.hung_up_by == "ruta"
